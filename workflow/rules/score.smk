# Toxicity scorers: a classifier trained by the pipeline (or an API / hub model), cached by text hash.


rule train_scorer:
    """The offline toxicity scorer: a classifier trained on labelled texts, with its held-out AUROC."""
    input:
        lambda wc: local_files(RUN.scorers[wc.scorer]["data"]["source"]),
    output:
        model="results/scorers/{scorer}/classifier.safetensors",
        meta="results/scorers/{scorer}/classifier.json",
        heldout="results/scorers/{scorer}/heldout.parquet",
    params:
        data=lambda wc: w2s.canonical(w2s.ScorerData, RUN.scorers[wc.scorer]["data"]),
        spec=lambda wc: w2s.model_spec(config, scorer_model(wc)),
        hparams=lambda wc: w2s.canonical(w2s.TrainParams, RUN.scorers[wc.scorer].get("train")),  # its own
        max_length=lambda wc: RUN.scorers[wc.scorer]["max_length"],
        code=code("train_scorer.py"),
    threads: RUN.threads
    resources:
        **request(scorer_model),
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
    output:
        "results/{task}/{model_run}/toxicity_{scorer}.parquet",
    wildcard_constraints:
        model_run=rf"(weak|base)/[^/]+/seed\d+|{MODEL_RUN}",
    params:
        scorer=lambda wc: w2s.params_string(RUN.scorers[wc.scorer]),
        cache=RUN.score_cache,
        code=code("score_generations.py"),
    threads: RUN.threads
    resources:
        **request(scorer_model, share=0.5, gpu=lambda wc: 1 if scorer_kind(wc) == "hf" else gpu_of(scorer_model(wc))),
    log:
        "logs/{task}/{model_run}/toxicity_{scorer}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/score_generations.py"
