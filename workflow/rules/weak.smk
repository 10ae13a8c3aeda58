# Weak supervisors: trained on ground truth (weak_train); their labels (classification) or continuations
# (generation) of the held-out prompts are the weak labels.


rule train_weak:
    input:
        unpack(converted_of("weak")),
        train=split_path("weak_train"),
        val=split_path("val"),
    output:
        model=paths.run_file(paths.CLASSIFIER, "weak"),
        meta=paths.run_file(paths.CLASSIFIER_META, "weak"),
    log:
        run_log("weak", "train"),
    benchmark:
        run_benchmark("weak", "train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("weak", "train"),
    params:
        spec=spec_of("weak"),
        hparams=hparams("weak"),
        max_length=max_length,
        target="gt",
        train_split="weak_train",
        local_dir=local_dir,
        code=code("train_classifier.py"),
    script:
        "../scripts/train_classifier.py"


rule weak_labels:
    input:
        unpack(converted_of("weak")),  # a LoRA checkpoint's base
        **{s: split_path(s) for s in ("weak_label", "val", "test")},
        model=rules.train_weak.output.model,
        meta=rules.train_weak.output.meta,
    output:
        paths.run_file(paths.WEAK_LABELS, "weak"),
    log:
        run_log("weak", "weak_labels"),
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("weak", "weak_labels", share=0.5),
    params:
        local_dir=local_dir,
        code=code("weak_labels.py"),
    script:
        "../scripts/weak_labels.py"


rule ensemble_labels:
    input:
        unpack(ensemble_members),
    output:
        paths.run_file(paths.WEAK_LABELS, "weak"),
    log:
        run_log("weak", "weak_labels"),
    wildcard_constraints:
        weak=names_regex([n for n, m in SETTINGS.models.items() if m.spec.kind == "ensemble"]),
    conda:
        "../../envs/w2s.yaml"
    params:
        code=code("ensemble_labels.py"),
    script:
        "../scripts/ensemble_labels.py"


rule train_weak_lm:
    input:
        unpack(converted_of("weak")),
        train=pair_path("weak_train"),
        val=pair_path("val"),
    output:
        model=paths.run_file(paths.LM, "weak"),
        meta=paths.run_file(paths.LM_META, "weak"),
    log:
        run_log("weak", "train"),
    benchmark:
        run_benchmark("weak", "train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("weak", "train_lm"),
    params:
        spec=spec_of("weak"),
        hparams=hparams("weak"),
        max_length=max_length,
        target="gt",
        train_split="weak_train",
        local_dir=local_dir,
        code=code("train_lm.py"),
    script:
        "../scripts/train_lm.py"


rule weak_generations:
    input:
        unpack(converted_of("weak")),
        model=rules.train_weak_lm.output.model,
        meta=rules.train_weak_lm.output.meta,
        weak_label=pair_path("weak_label"),
        val=pair_path("val"),
    output:
        paths.run_file(paths.WEAK_GENERATIONS, "weak"),
    log:
        run_log("weak", "weak_generations"),
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("weak", "weak_generations", share=0.5, gpu=1),
    params:
        local_dir=local_dir,
        decoding=from_config(w2s.decoding, "task"),
        code=code("weak_generations.py"),
    script:
        "../scripts/weak_generations.py"


rule best_of_n:
    """Best-of-N weak labels: N weak continuations per prompt, the least toxic by the selector kept."""
    input:
        unpack(selector_files),
        unpack(converted_of("weak")),
        model=rules.train_weak_lm.output.model,
        meta=rules.train_weak_lm.output.meta,
        weak_label=pair_path("weak_label"),
        val=pair_path("val"),
    output:
        paths.run_file(paths.BEST_OF_N, "weak"),
    log:
        run_log("weak", "best_of_{n}_{scorer}"),
    wildcard_constraints:
        n=r"\d+",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **api_quota.api_request(SETTINGS, "best_of_n", request("weak", "best_of_n", share=0.5, gpu=1)),
    params:
        decoding=from_config(w2s.decoding, "task"),
        local_dir=local_dir,
        selector=scorer_setting(None),
        cache=RUN.score_cache,
        code=code("best_of_n.py"),
    script:
        "../scripts/best_of_n.py"
