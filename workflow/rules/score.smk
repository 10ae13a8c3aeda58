# Toxicity scorers: a classifier trained by the pipeline (or an API / hub model), cached by text hash.
# A web-API scorer's quota belongs to its key, not to a job: its jobs (score_generations, best_of_n) each take
# one unit of <kind>_api (e.g. perspective_api), of which the workflow provides 1 unless --resources sets it,
# so they run one at a time, locally and on SLURM (docs/cluster.md#web-api-scorers-perspective).
from snakemake.logging import logger

for api_limit in map(api_quota.api_resource, api_quota.api_kinds()):
    if api_limit not in workflow.global_resources:  # the user's --resources value wins
        workflow.register_resource(api_limit, 1)
# A missing API key: a warning at parse time (a dry run goes on), an error before the first job of a real run.
if workflow.is_main_process:
    API_KEY_PROBLEM = validate.missing_api_keys(SETTINGS, api_quota.api_scorers(SETTINGS), os.environ)
    if API_KEY_PROBLEM:
        logger.warning(
            f"Warning: {API_KEY_PROBLEM} (a dry run goes on; a real run stops before its first job)"
        )


rule train_scorer:
    """The offline toxicity scorer: a classifier trained on labelled texts, with its held-out AUROC."""
    input:
        source_of("data", scorer),
    output:
        model=paths.SCORER_CLASSIFIER,
        meta=paths.SCORER_META,
        heldout=paths.SCORER_HELDOUT,
    log:
        paths.fill(paths.LOG, name="scorers/{scorer}/train"),
    benchmark:
        paths.fill(paths.BENCHMARK, name="scorers/{scorer}/train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(from_config(paths.scorer_model, "scorer"), "train_scorer"),
    params:
        data=scorer_setting("data", w2s.ScorerData),
        spec=spec_of(from_config(paths.scorer_model, "scorer")),
        hparams=scorer_setting("train", w2s.TrainParams),  # its own, not its model's
        max_length=scorer_setting("max_length"),
        code=code("train_scorer.py"),
    script:
        "../scripts/train_scorer.py"


rule score_generations:
    """Toxicity of every continuation by one scorer (cached by text hash across runs)."""
    input:
        unpack(scorer_files),
        generations=paths.run_file(paths.GENERATIONS, "model_run"),
    output:
        paths.run_file(paths.SCORES, "model_run"),
    log:
        run_log("model_run", "toxicity_{scorer}"),
    wildcard_constraints:
        model_run=rf"(weak|base)/[^/]+/seed\d+|{MODEL_RUN}|{DPO_RUN}",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **api_quota.api_request(
            SETTINGS,
            "score",
            request(
                from_config(paths.scorer_model, "scorer"),
                "score",
                share=0.5,
                gpu=from_config(paths.scorer_gpus, "scorer"),
            ),
        ),
    params:
        scorer=scorer_setting(None),
        cache=RUN.score_cache,
        code=code("score_generations.py"),
    script:
        "../scripts/score_generations.py"
