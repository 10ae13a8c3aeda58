# The strong model trained on ground truth (ceiling, shared by all students) and on weak labels (student).
# Each writes its checkpoint and its predictions on val and test.


rule train_ceiling:
    input:
        train=split_path("weak_label"),
        val=split_path("val"),
        test=split_path("test"),
        code=package_code("w2s_align.train", "w2s_align.predict"),
    output:
        model="results/{task}/ceiling/{strong}/seed{seed}/model.safetensors",
        meta="results/{task}/ceiling/{strong}/seed{seed}/model.json",
        predictions="results/{task}/ceiling/{strong}/seed{seed}/predictions.parquet",
    wildcard_constraints:
        task=CLASSIFICATION,
    params:
        spec=lambda wc: model_spec(wc.strong),
        hparams=lambda wc: train_hparams(wc.strong, "ceiling"),
        max_length=max_length,
        target="gt",
        train_split="weak_label",
    threads: 2
    resources:
        gpu=lambda wc: gpus(wc.strong),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("strong", "mem_mb"),
        runtime=model_request("strong", "runtime"),
    log:
        "logs/{task}/ceiling/{strong}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/ceiling/{strong}/seed{seed}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/train.py"


use rule train_ceiling as train_student with:
    input:
        train="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        val="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        test=split_path("test"),
        code=package_code("w2s_align.train", "w2s_align.predict"),
    output:
        model="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/model.safetensors",
        meta="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/model.json",
        predictions="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/predictions.parquet",
    params:
        spec=lambda wc: model_spec(wc.strong),
        hparams=lambda wc: train_hparams(wc.strong, "student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
        strategy=strategy_spec,
    log:
        "logs/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.tsv"
