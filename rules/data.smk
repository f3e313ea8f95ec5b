# Data stages: phantoms -> preprocess (tensor store) -> split.


rule phantoms:
    output:
        directory(f"{RESULTS}/phantoms/{{dataset}}"),
    params:
        cfg=section("phantoms"),
        layout=lambda w: dataset_cfg(w)["layout"],
    input:
        code("phantoms"),
    conda:
        "../envs/cxrgen.yaml"
    log:
        f"{RESULTS}/logs/phantoms/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phantoms/{{dataset}}.tsv"
    script:
        "../workflow_scripts/phantoms.py"


rule phantom_contact_sheet:
    input:
        f"{RESULTS}/phantoms/{{dataset}}",
    output:
        report(
            f"{RESULTS}/figures/phantoms_{{dataset}}.png",
            caption="../report/phantoms.rst",
            category="Data",
        ),
    params:
        layout=lambda w: dataset_cfg(w)["layout"],
    conda:
        "../envs/cxrgen.yaml"
    log:
        f"{RESULTS}/logs/phantom_contact_sheet/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phantom_contact_sheet/{{dataset}}.tsv"
    script:
        "../workflow_scripts/phantom_contact_sheet.py"


rule preprocess:
    input:
        data=source_input,
        code=code(
            "data/preprocess.py",
            "data/dicom.py",
            "data/imagefolder.py",
            "data/geometry.py",
            "data/labels.py",
            "data/intensity.py",
            "data/store.py",
        ),
    output:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        index=f"{RESULTS}/data/{{dataset}}/index.parquet",
        rejected=f"{RESULTS}/data/{{dataset}}/rejected.parquet",
        classes=f"{RESULTS}/data/{{dataset}}/classes.json",
    params:
        cfg=section("preprocess"),
    threads: config.get("preprocess_threads", 4)
    resources:
        mem_mb=4000,
    conda:
        "../envs/cxrgen.yaml"
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    script:
        "../workflow_scripts/preprocess.py"


rule split:
    input:
        index=f"{RESULTS}/data/{{dataset}}/index.parquet",
        code=code("data/split.py"),
    output:
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        counts=report(
            f"{RESULTS}/splits/{{dataset}}/counts.parquet",
            caption="../report/split_counts.rst",
            category="Data",
        ),
        classes=f"{RESULTS}/splits/{{dataset}}/classes.json",
    params:
        cfg=section("split"),
    conda:
        "../envs/cxrgen.yaml"
    log:
        f"{RESULTS}/logs/split/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{dataset}}.tsv"
    script:
        "../workflow_scripts/split.py"
