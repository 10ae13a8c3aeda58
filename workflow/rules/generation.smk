# Generation tasks (toxicity): the weak LM's continuations are the weak labels; every model continues
# the evaluation prompts; continuations are scored for toxicity and perplexity (RealToxicityPrompts protocol).
# Paths mirror the classification stages: results/{task}/{weak,base,ceiling,student}/.../seed{seed}/.
rule convert_gguf:
    input:
        code=package_code("w2s_align.gguf"),
    output:
        multiext("results/models/{model}/", "config.json", "model.safetensors", "tokenizer.json"),
    wildcard_constraints:
        model=names_regex(gguf_models()),
    params:
        spec=lambda wc: model_spec(wc.model),
    resources:
        mem_mb=model_request("model", "mem_mb"),
        runtime=model_request("model", "runtime", share=0.5),
    log:
        "logs/models/{model}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/convert_gguf.py"


rule split_corpus:
    input:
        data=lambda wc: [s for s in (config["tasks"][wc.task]["corpus"]["source"],
                                     config["tasks"][wc.task]["prompts"]["source"]) if not s.startswith("hf:")],
        code=package_code("w2s_align.corpus"),
    output:
        weak_train=split_path("weak_train"),
        weak_label=split_path("weak_label"),
        val=split_path("val"),
        test=split_path("test"),
    wildcard_constraints:
        task=GENERATION,
    params:
        corpus=task_setting("corpus"),
        prompts=task_setting("prompts"),
    log:
        "logs/{task}/splits/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/split_corpus.py"


rule train_weak_lm:
    input:
        train=split_path("weak_train"),
        val=split_path("val"),
        code=package_code("w2s_align.lm"),
    output:
        model="results/{task}/weak/{weak}/seed{seed}/model.safetensors",
        meta="results/{task}/weak/{weak}/seed{seed}/model.json",
    wildcard_constraints:
        task=GENERATION,
    params:
        spec=lambda wc: model_spec(wc.weak),
        hparams=lambda wc: train_hparams(wc.weak, "weak"),
        max_length=max_length,
        target="gt",
        train_split="weak_train",
    threads: 2
    resources:
        gpu=1,
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
        "../scripts/train_lm.py"


rule weak_generations:
    input:
        model=rules.train_weak_lm.output.model,
        meta=rules.train_weak_lm.output.meta,
        weak_label=split_path("weak_label"),
        val=split_path("val"),
        test=split_path("test"),
        code=package_code("w2s_align.generation"),
    output:
        labels="results/{task}/weak/{weak}/seed{seed}/weak_generations.parquet",
        generations="results/{task}/weak/{weak}/seed{seed}/generations.parquet",
    wildcard_constraints:
        task=GENERATION,
    params:
        decoding=task_setting("decoding"),
        eval_samples=lambda wc: config["tasks"][wc.task]["eval_samples"],
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("weak", "mem_mb"),
        runtime=model_request("weak", "runtime", share=0.5),
    log:
        "logs/{task}/weak/{weak}/seed{seed}/generate.log",
    benchmark:
        "results/benchmarks/{task}/weak/{weak}/seed{seed}/generate.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/weak_generations.py"


rule train_lm_ceiling:
    input:
        unpack(lambda wc: base_files(wc.strong)),
        train=split_path("weak_label"),
        val=split_path("val"),
        code=package_code("w2s_align.lm"),
    output:
        model="results/{task}/ceiling/{strong}/seed{seed}/model.safetensors",
        meta="results/{task}/ceiling/{strong}/seed{seed}/model.json",
    wildcard_constraints:
        task=GENERATION,
    params:
        local_dir=local_dir,
        spec=lambda wc: model_spec(wc.strong),
        hparams=lambda wc: train_hparams(wc.strong, "ceiling"),
        max_length=max_length,
        target="gt",
        train_split="weak_label",
    threads: 2
    resources:
        gpu=1,
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
        "../scripts/train_lm.py"


rule best_of_n:
    """Best-of-N weak labels: N weak continuations per prompt, the least toxic by the selector kept."""
    input:
        unpack(lambda wc: {f"{k}_selector": v for k, v in scorer_files(wc).items()}),
        model=rules.train_weak_lm.output.model,
        meta=rules.train_weak_lm.output.meta,
        weak_label=split_path("weak_label"),
        val=split_path("val"),
        code=package_code("w2s_align.best_of_n"),
    output:
        "results/{task}/weak/{weak}/seed{seed}/best_of_{n}_{scorer}.parquet",
    wildcard_constraints:
        task=GENERATION,
        n=r"\d+",
    params:
        decoding=task_setting("decoding"),
        selector=lambda wc: canonical(config["scorers"][wc.scorer]),
        cache=config["score_cache"],
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("weak", "mem_mb"),
        runtime=model_request("weak", "runtime", share=0.5),
    log:
        "logs/{task}/weak/{weak}/seed{seed}/best_of_{n}_{scorer}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/best_of_n.py"


use rule train_lm_ceiling as train_lm_student with:
    input:
        unpack(lambda wc: base_files(wc.strong)),
        train=student_targets,
        val=student_targets,
        code=package_code("w2s_align.lm"),
    output:
        model="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/model.safetensors",
        meta="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/model.json",
    params:
        local_dir=local_dir,
        spec=lambda wc: model_spec(wc.strong),
        hparams=lambda wc: train_hparams(wc.strong, "student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
    log:
        "logs/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/train.tsv"


rule lm_generations:
    """Continuations of the evaluation prompts by a fine-tuned strong LM (ceiling or student)."""
    input:
        unpack(lambda wc: base_files(run_strong_model(wc))),
        model="results/{task}/{model_run}/model.safetensors",
        meta="results/{task}/{model_run}/model.json",
        test=lambda wc: f"results/{wc.task}/splits/{wc.model_run.split('/')[-1]}/test.parquet",
        code=package_code("w2s_align.generation"),
    output:
        "results/{task}/{model_run}/generations.parquet",
    wildcard_constraints:
        task=GENERATION,
        model_run=r"ceiling/[^/]+/seed\d+|student/[^/]+/[^/]+/seed\d+",
    params:
        local_dir=local_dir,
        decoding=task_setting("decoding"),
        eval_samples=lambda wc: config["tasks"][wc.task]["eval_samples"],
        model_name=run_strong_model,
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request(run_strong_model, "mem_mb"),
        runtime=model_request(run_strong_model, "runtime", share=0.5),
    log:
        "logs/{task}/{model_run}/generate.log",
    benchmark:
        "results/benchmarks/{task}/{model_run}/generate.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/lm_generations.py"


rule base_generations:
    """Continuations of the untuned strong model: the 'base' row of the toxicity table."""
    input:
        unpack(lambda wc: base_files(wc.strong)),
        test=split_path("test"),
        code=package_code("w2s_align.generation"),
    output:
        "results/{task}/base/{strong}/seed{seed}/generations.parquet",
    wildcard_constraints:
        task=GENERATION,
    params:
        local_dir=local_dir,
        spec=lambda wc: model_spec(wc.strong),
        decoding=task_setting("decoding"),
        eval_samples=lambda wc: config["tasks"][wc.task]["eval_samples"],
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request("strong", "mem_mb"),
        runtime=model_request("strong", "runtime", share=0.5),
    log:
        "logs/{task}/base/{strong}/seed{seed}/generate.log",
    benchmark:
        "results/benchmarks/{task}/base/{strong}/seed{seed}/generate.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/base_generations.py"


rule perplexity:
    """Fluency: each continuation's likelihood under the task's fixed reference LM."""
    input:
        unpack(lambda wc: base_files(reference_lm(wc))),
        generations="results/{task}/{model_run}/generations.parquet",
        code=package_code("w2s_align.generation"),
    output:
        "results/{task}/{model_run}/perplexity.parquet",
    wildcard_constraints:
        task=GENERATION,
        model_run=MODEL_RUN,
    params:
        local_dir=local_dir,
        spec=lambda wc: model_spec(reference_lm(wc)),
        max_length=max_length,
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request(reference_lm, "mem_mb"),
        runtime=model_request(reference_lm, "runtime", share=0.5),
    log:
        "logs/{task}/{model_run}/perplexity.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/perplexity.py"


rule train_scorer:
    """The offline toxicity scorer: a classifier trained on labelled texts, with its held-out AUROC."""
    input:
        data=lambda wc: [s for s in [config["scorers"][wc.scorer]["data"]["source"]] if not s.startswith("hf:")],
        code=package_code("w2s_align.scoring"),
    output:
        model="results/scorers/{scorer}/model.safetensors",
        meta="results/scorers/{scorer}/model.json",
        heldout="results/scorers/{scorer}/heldout.parquet",
    params:
        data=lambda wc: canonical(config["scorers"][wc.scorer]["data"]),
        spec=lambda wc: model_spec(config["scorers"][wc.scorer]["model"]),
        hparams=lambda wc: canonical(config["scorers"][wc.scorer].get("train", {})),  # not the model's: fixed yardstick
        max_length=lambda wc: config["scorers"][wc.scorer]["max_length"],
    threads: 2
    resources:
        gpu=lambda wc: gpus(scorer_model(wc)),
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request(scorer_model, "mem_mb"),
        runtime=model_request(scorer_model, "runtime"),
    log:
        "logs/scorers/{scorer}/train.log",
    benchmark:
        "results/benchmarks/scorers/{scorer}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/train_scorer.py"


rule score_generations:
    """Toxicity of every continuation by one scorer (cached by text hash across runs)."""
    input:
        unpack(scorer_files),
        generations="results/{task}/{model_run}/generations.parquet",
        code=package_code("w2s_align.scoring"),
    output:
        "results/{task}/{model_run}/toxicity_{scorer}.parquet",
    wildcard_constraints:
        task=GENERATION,
        model_run=MODEL_RUN,
    params:
        scorer=lambda wc: canonical(config["scorers"][wc.scorer]),
        cache=config["score_cache"],
    threads: 2
    resources:
        gpu=lambda wc: gpus(scorer_model(wc)) if config["scorers"][wc.scorer]["kind"] != "hf" else 1,
        cpus_per_gpu=lambda wc, threads: threads,
        mem_mb=model_request(scorer_model, "mem_mb"),
        runtime=model_request(scorer_model, "runtime", share=0.5),
    log:
        "logs/{task}/{model_run}/toxicity_{scorer}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/score_generations.py"


rule toxicity_metrics:
    input:
        unpack(toxicity_inputs),
        code=package_code("w2s_align.genmetrics"),
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.parquet",
    wildcard_constraints:
        task=GENERATION,
    params:
        identity=run_identity,
        n_boot=config["metrics"]["bootstrap"],
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/toxicity_metrics.py"
