# Apply: a finished data set's models on a folder of new images (config "apply"), no labels
# needed; the settings are the ones that data set's evaluation chose on its calibration split.


rule apply:
    input:
        unpack(apply_inputs),
        code=script_code("apply.py"),
    output:
        scores=f"{RESULTS}/apply/{{name}}/scores.parquet",
    log:
        f"{RESULTS}/logs/apply/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/apply/{{name}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        cfg=apply_cfg,
    script:
        "../workflow_scripts/apply.py"
