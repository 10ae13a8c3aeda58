# Data: classification splits, generation fine-tuning pairs, and evaluation prompts (shared by all seeds).


rule split_data:
    input:
        source_of("data"),
    output:
        **{s: split_path(s) for s in SPLITS},
    log:
        paths.fill(paths.LOG, name="{task}/splits/seed{seed}"),
    conda:
        "../../envs/w2s.yaml"
    params:
        data=task_block("data", w2s.TaskData),
        code=code("split_data.py"),
    script:
        "../scripts/split_data.py"


rule gold_corpus:
    """Gold continuations of the training prompts: the untuned generator's least toxic fluent sample, by a judge."""
    input:
        unpack(from_config(paths.gold_inputs, "task")),
        source_of("corpus"),
        prompts=paths.PROMPTS,
    output:
        paths.GOLD,
    log:
        paths.fill(paths.LOG, name="{task}/gold"),
    benchmark:
        paths.fill(paths.BENCHMARK, name="{task}/gold")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(from_config(paths.gold_generator, "task"), "gold"),
    params:
        corpus=task_block("corpus", w2s.CorpusSpec),
        generator=spec_of(from_config(paths.gold_generator, "task")),
        judge=from_config(paths.gold_judge, "task"),
        decoding=from_config(w2s.decoding, "task"),
        local_dir=local_dir,
        cache=RUN.score_cache,
        code=code("gold_corpus.py"),
    script:
        "../scripts/gold_corpus.py"


rule split_corpus:
    input:
        unpack(from_config(paths.gold_file, "task")),
        source_of("corpus"),
    output:
        **{s: pair_path(s) for s in PAIRS},
    log:
        paths.fill(paths.LOG, name="{task}/pairs/seed{seed}"),
    conda:
        "../../envs/w2s.yaml"
    params:
        corpus=task_block("corpus", w2s.CorpusSpec),
        code=code("split_corpus.py"),
    script:
        "../scripts/split_corpus.py"


rule eval_prompts:
    input:
        source_of("prompts"),
    output:
        paths.PROMPTS,
    log:
        paths.fill(paths.LOG, name="{task}/prompts"),
    conda:
        "../../envs/w2s.yaml"
    params:
        prompts=task_block("prompts", w2s.PromptSpec),
        code=code("eval_prompts.py"),
    script:
        "../scripts/eval_prompts.py"
