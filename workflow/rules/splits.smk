# Data: classification splits, generation fine-tuning pairs, and evaluation prompts (shared by all seeds).


rule split_data:
    input:
        source_of("data"),
    output:
        **{s: split_path(s) for s in SPLITS},
    params:
        data=task_block("data", w2s.TaskData),
        code=code("split_data.py"),
    log:
        "logs/{task}/splits/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/split_data.py"


rule split_corpus:
    input:
        source_of("corpus"),
    output:
        **{s: pair_path(s) for s in PAIRS},
    params:
        corpus=task_block("corpus", w2s.CorpusSpec),
        code=code("split_corpus.py"),
    log:
        "logs/{task}/pairs/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/split_corpus.py"


rule eval_prompts:
    input:
        source_of("prompts"),
    output:
        "results/{task}/prompts.parquet",
    params:
        prompts=task_block("prompts", w2s.PromptSpec),
        code=code("eval_prompts.py"),
    log:
        "logs/{task}/prompts.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/eval_prompts.py"
