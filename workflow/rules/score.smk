# Toxicity scorers: a classifier trained by the pipeline (or an API / hub model), cached by text hash.


rule train_scorer:
    """The offline toxicity scorer: a classifier trained on labelled texts, with its held-out AUROC."""
    input:
        source_of("data", scorer),
    output:
        model="results/scorers/{scorer}/classifier.safetensors",
        meta="results/scorers/{scorer}/classifier.json",
        heldout="results/scorers/{scorer}/heldout.parquet",
    log:
        "logs/scorers/{scorer}/train.log",
    benchmark:
        "results/benchmarks/scorers/{scorer}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(from_config(layout.scorer_model, "scorer")),
    params:
        data=scorer_setting("data", w2s.ScorerData),
        spec=spec_of(from_config(layout.scorer_model, "scorer")),
        hparams=scorer_setting("train", w2s.TrainParams),  # its own, not its model's
        max_length=scorer_setting("max_length"),
        code=code("train_scorer.py"),
    script:
        "../scripts/train_scorer.py"


rule score_generations:
    """Toxicity of every continuation by one scorer (cached by text hash across runs)."""
    input:
        unpack(scorer_files),
        generations="results/{task}/{model_run}/generations.parquet",
    output:
        "results/{task}/{model_run}/toxicity_{scorer}.parquet",
    log:
        "logs/{task}/{model_run}/toxicity_{scorer}.log",
    wildcard_constraints:
        model_run=rf"(weak|base)/[^/]+/seed\d+|{MODEL_RUN}",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(from_config(layout.scorer_model, "scorer"), share=0.5, gpu=from_config(layout.scorer_gpus, "scorer")),
    params:
        scorer=scorer_setting(None),
        cache=RUN.score_cache,
        code=code("score_generations.py"),
    script:
        "../scripts/score_generations.py"
