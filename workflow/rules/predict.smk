# Inference from saved checkpoints: classifier predictions on val and test, continuations of the
# evaluation prompts (every LM and the untuned base) and their perplexity under the reference LM.
MODEL_RUN = r"ceiling/[^/]+/seed\d+|student/[^/]+/[^/]+/seed\d+"  # a strong model's folder in a task
DPO_RUN = r"dpo-ceiling/[^/]+/seed\d+|dpo-student/[^/]+/[^/]+/seed\d+"  # ... trained on preferences


rule predict:
    input:
        unpack(converted_of(run_model)),  # a LoRA checkpoint's base
        model=paths.run_file(paths.CLASSIFIER, "model_run"),
        meta=paths.run_file(paths.CLASSIFIER_META, "model_run"),
        val=run_split("val"),
        test=run_split("test"),
    output:
        paths.run_file(paths.PREDICTIONS, "model_run"),
    log:
        run_log("model_run", "predict"),
    wildcard_constraints:
        model_run=MODEL_RUN,
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(run_model, "predict", share=0.5),
    params:
        model_name=run_model,
        local_dir=local_dir,
        code=code("predict.py"),
    script:
        "../scripts/predict.py"


rule lm_generations:
    input:
        unpack(converted_of(run_model)),
        model=paths.run_file(paths.LM, "model_run"),
        meta=paths.run_file(paths.LM_META, "model_run"),
        prompts=paths.PROMPTS,
    output:
        paths.run_file(paths.GENERATIONS, "model_run"),
    log:
        run_log("model_run", "generate"),
    benchmark:
        run_benchmark("model_run", "generate")
    wildcard_constraints:
        model_run=rf"weak/[^/]+/seed\d+|{MODEL_RUN}|{DPO_RUN}",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(run_model, "generate", share=0.5, gpu=1),
    params:
        local_dir=local_dir,
        decoding=from_config(w2s.decoding, "task"),
        eval_samples=eval_samples,
        model_name=run_model,
        seed=run_seed,
        code=code("lm_generations.py"),
    script:
        "../scripts/lm_generations.py"


rule base_generations:
    """Continuations of the untuned strong model: the 'base' row of the toxicity table."""
    input:
        unpack(converted_of("strong")),
        prompts=paths.PROMPTS,
    output:
        paths.run_file(paths.GENERATIONS, "base"),
    log:
        run_log("base", "generate"),
    benchmark:
        run_benchmark("base", "generate")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", "generate", share=0.5, gpu=1),
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        decoding=from_config(w2s.decoding, "task"),
        eval_samples=eval_samples,
        code=code("base_generations.py"),
    script:
        "../scripts/base_generations.py"


rule perplexity:
    """Fluency: each continuation's likelihood under the task's fixed reference LM."""
    input:
        unpack(converted_of(reference_lm)),
        generations=paths.run_file(paths.GENERATIONS, "model_run"),
    output:
        paths.run_file(paths.PERPLEXITY, "model_run"),
    log:
        run_log("model_run", "perplexity"),
    wildcard_constraints:
        model_run=rf"(weak|base)/[^/]+/seed\d+|{MODEL_RUN}|{DPO_RUN}",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(reference_lm, "perplexity", share=0.5, gpu=1),
    params:
        local_dir=local_dir,
        spec=spec_of(reference_lm),
        max_length=max_length,
        code=code("perplexity.py"),
    script:
        "../scripts/perplexity.py"
