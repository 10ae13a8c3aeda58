# Strong models: the ceiling (ground truth, shared by all students) and the W2S students (weak labels).
# Classifiers write classifier.*, language models lm.*; predictions and generations are rules of their own.


rule train_ceiling:
    input:
        train=split_path("weak_label"),
        val=split_path("val"),
    output:
        model="results/{task}/ceiling/{strong}/seed{seed}/classifier.safetensors",
        meta="results/{task}/ceiling/{strong}/seed{seed}/classifier.json",
    log:
        "logs/{task}/ceiling/{strong}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/ceiling/{strong}/seed{seed}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong"),
    params:
        spec=spec_of("strong"),
        hparams=hparams("ceiling"),
        max_length=max_length,
        target="gt",
        train_split="weak_label",
        code=code("train_classifier.py"),
    script:
        "../scripts/train_classifier.py"


use rule train_ceiling as train_student with:
    input:
        train="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        val="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
    output:
        model="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/classifier.safetensors",
        meta="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/classifier.json",
    log:
        "logs/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.tsv"
    params:
        spec=spec_of("strong"),
        hparams=hparams("student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
        strategy=strategy_spec,
        code=code("train_classifier.py"),


rule convert_gguf:
    output:
        multiext("results/models/{gguf}/", *layout.CONVERTED_FILES),
    log:
        "logs/models/{gguf}.log",
    wildcard_constraints:
        gguf=names_regex(layout.gguf_models(SETTINGS)),
    conda:
        "../../envs/w2s.yaml"
    resources:
        **request(lambda wc: layout.gguf_models(SETTINGS)[wc.gguf], share=0.5, gpu=0),
    params:
        spec=from_config(layout.gguf_spec, "gguf"),
        code=code("convert_gguf.py"),
    script:
        "../scripts/convert_gguf.py"


rule train_lm_ceiling:
    input:
        unpack(base_of("strong")),
        train=pair_path("weak_label"),
        val=pair_path("val"),
    output:
        model="results/{task}/ceiling/{strong}/seed{seed}/lm.safetensors",
        meta="results/{task}/ceiling/{strong}/seed{seed}/lm.json",
    log:
        "logs/{task}/ceiling/{strong}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/ceiling/{strong}/seed{seed}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong"),
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=hparams("ceiling"),
        max_length=max_length,
        target="gt",
        train_split="weak_label",
        code=code("train_lm.py"),
    script:
        "../scripts/train_lm.py"


use rule train_lm_ceiling as train_lm_student with:
    input:
        unpack(base_of("strong")),
        train=from_config(layout.student_targets, "task", "weak", "strategy", "seed"),
        val=from_config(layout.student_targets, "task", "weak", "strategy", "seed"),
    output:
        model="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/lm.safetensors",
        meta="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/lm.json",
    log:
        "logs/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.tsv"
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=hparams("student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
        code=code("train_lm.py"),
