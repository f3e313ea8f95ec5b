# Data stages: phantoms -> preprocess (tensor store) -> split.


rule phantoms:
    input:
        code=script_code("phantoms.py"),
    output:
        directory(f"{RESULTS}/phantoms/{{dataset}}"),
    log:
        f"{RESULTS}/logs/phantoms/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phantoms/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    params:
        cfg=section("phantoms"),
        layout=lambda w: dataset_cfg(w)["layout"],
    script:
        "../workflow_scripts/phantoms.py"


rule phantom_contact_sheet:
    input:
        f"{RESULTS}/phantoms/{{dataset}}",
        code=script_code("phantom_contact_sheet.py"),
    output:
        report(
            f"{RESULTS}/figures/phantoms_{{dataset}}.png",
            caption="../report/phantoms.rst",
            category="Data",
        ),
    log:
        f"{RESULTS}/logs/phantom_contact_sheet/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phantom_contact_sheet/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    params:
        layout=lambda w: dataset_cfg(w)["layout"],
    script:
        "../workflow_scripts/phantom_contact_sheet.py"


rule preprocess:
    input:
        data=source_input,
        code=script_code("preprocess.py"),
    output:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        index=f"{RESULTS}/data/{{dataset}}/index.parquet",
        rejected=f"{RESULTS}/data/{{dataset}}/rejected.parquet",
        classes=f"{RESULTS}/data/{{dataset}}/classes.json",
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("preprocess_threads", 4)
    resources:
        mem_mb=4000,
    params:
        cfg=section("preprocess"),
    script:
        "../workflow_scripts/preprocess.py"


rule split:
    input:
        index=f"{RESULTS}/data/{{dataset}}/index.parquet",
        code=script_code("split.py"),
    output:
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        counts=f"{RESULTS}/splits/{{dataset}}/counts.parquet",
        counts_html=report(
            f"{RESULTS}/splits/{{dataset}}/counts.html",
            caption="../report/split_counts.rst",
            category="Data",
        ),
        classes=f"{RESULTS}/splits/{{dataset}}/classes.json",
    log:
        f"{RESULTS}/logs/split/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    params:
        cfg=section("split"),
    script:
        "../workflow_scripts/split.py"
