rule split_data:
    input:
        data_source,
        code=package_code("w2s_align.data"),
    output:
        weak_train=split_path("weak_train"),
        weak_label=split_path("weak_label"),
        val=split_path("val"),
        test=split_path("test"),
    params:
        data=task_data,
    log:
        "logs/{task}/splits/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/split_data.py"
