rule train_weak:
    input:
        train=split_path("weak_train"),
        val=split_path("val"),
        code=package_code("w2s_align.train"),
    output:
        model="results/{task}/weak/{weak}/seed{seed}/model.safetensors",
        meta="results/{task}/weak/{weak}/seed{seed}/model.json",
    wildcard_constraints:
        task=CLASSIFICATION,
    params:
        spec=lambda wc: model_spec(wc.weak),
        hparams=lambda wc: train_hparams(wc.weak, "weak"),
        max_length=max_length,
        target="gt",
        train_split="weak_train",
    threads: 2
    resources:
        gpu=lambda wc: gpus(wc.weak),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("weak", "mem_mb"),
        runtime=model_request("weak", "runtime"),
    log:
        "logs/{task}/weak/{weak}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/weak/{weak}/seed{seed}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/train.py"


rule weak_labels:
    input:
        model=rules.train_weak.output.model,
        meta=rules.train_weak.output.meta,
        weak_label=split_path("weak_label"),
        val=split_path("val"),
        test=split_path("test"),
        code=package_code("w2s_align.predict"),
    output:
        "results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
    wildcard_constraints:
        task=CLASSIFICATION,
    params:
        model_name=lambda wc: wc.weak,
    threads: 2
    resources:
        gpu=lambda wc: gpus(wc.weak),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("weak", "mem_mb"),
        runtime=model_request("weak", "runtime", share=0.5),
    log:
        "logs/{task}/weak/{weak}/seed{seed}/weak_labels.log",
    benchmark:
        "results/benchmarks/{task}/weak/{weak}/seed{seed}/weak_labels.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/weak_labels.py"


rule ensemble_labels:
    input:
        unpack(ensemble_members),
        code=package_code("w2s_align.strategies"),
    output:
        "results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
    wildcard_constraints:
        task=CLASSIFICATION,
        weak=names_regex(ensembles()),
    params:
        members=lambda wc: config["models"][wc.weak]["members"],
    log:
        "logs/{task}/weak/{weak}/seed{seed}/weak_labels.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/ensemble_labels.py"
