# Strong models: the ceiling (ground truth, shared by all students) and the W2S students (weak labels).
# Classifiers write classifier.*, language models lm.*; predictions and generations are rules of their own.


rule train_ceiling:
    input:
        unpack(converted_of("strong")),
        train=split_path("weak_label"),
        val=split_path("val"),
    output:
        model=paths.run_file(paths.CLASSIFIER, "ceiling"),
        meta=paths.run_file(paths.CLASSIFIER_META, "ceiling"),
    log:
        run_log("ceiling", "train"),
    benchmark:
        run_benchmark("ceiling", "train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", "train"),
    params:
        spec=spec_of("strong"),
        hparams=hparams("ceiling"),
        max_length=max_length,
        target="gt",
        train_split="weak_label",
        local_dir=local_dir,
        code=code("train_classifier.py"),
    script:
        "../scripts/train_classifier.py"


use rule train_ceiling as train_student with:
    input:
        unpack(converted_of("strong")),
        train=paths.run_file(paths.WEAK_LABELS, "weak"),
        val=paths.run_file(paths.WEAK_LABELS, "weak"),
    output:
        model=paths.run_file(paths.CLASSIFIER, "student"),
        meta=paths.run_file(paths.CLASSIFIER_META, "student"),
    log:
        run_log("student", "train"),
    benchmark:
        run_benchmark("student", "train")
    params:
        spec=spec_of("strong"),
        hparams=hparams("student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
        strategy=strategy_spec,
        local_dir=local_dir,
        code=code("train_classifier.py"),


rule convert_gguf:
    output:
        multiext(paths.CONVERTED, *paths.CONVERTED_FILES),
    log:
        paths.fill(paths.LOG, name="models/{gguf}"),
    wildcard_constraints:
        gguf=names_regex(paths.gguf_models(SETTINGS)),
    conda:
        "../../envs/w2s.yaml"
    resources:
        **request(lambda wc: paths.gguf_models(SETTINGS)[wc.gguf], "convert", share=0.5, gpu=0),
    params:
        spec=from_config(paths.local_spec, "gguf"),
        code=code("convert_gguf.py"),
    script:
        "../scripts/convert_gguf.py"


rule unpack_archive:
    output:
        multiext(paths.CONVERTED, *paths.CONVERTED_FILES),
    log:
        paths.fill(paths.LOG, name="models/{gguf}"),
    wildcard_constraints:
        gguf=names_regex(paths.archive_models(SETTINGS)),
    conda:
        "../../envs/w2s.yaml"
    resources:
        **request(lambda wc: paths.archive_models(SETTINGS)[wc.gguf], "convert", share=0.5, gpu=0),
    params:
        spec=from_config(paths.local_spec, "gguf"),
        code=code("unpack_archive.py"),
    script:
        "../scripts/unpack_archive.py"


rule train_lm_ceiling:
    input:
        unpack(converted_of("strong")),
        train=pair_path("weak_label"),
        val=pair_path("val"),
    output:
        model=paths.run_file(paths.LM, "ceiling"),
        meta=paths.run_file(paths.LM_META, "ceiling"),
    log:
        run_log("ceiling", "train"),
    benchmark:
        run_benchmark("ceiling", "train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", "train_lm"),
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
        unpack(converted_of("strong")),
        train=from_config(paths.student_targets, "task", "weak", "strategy", "seed"),
        val=from_config(paths.student_targets, "task", "weak", "strategy", "seed"),
    output:
        model=paths.run_file(paths.LM, "student"),
        meta=paths.run_file(paths.LM_META, "student"),
    log:
        run_log("student", "train"),
    benchmark:
        run_benchmark("student", "train")
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=hparams("student"),
        max_length=max_length,
        target="weak",
        train_split="weak_label",
        code=code("train_lm.py"),
