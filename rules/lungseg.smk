# Lung masks for data sets that have none: a UNet trained on the lung masks a data set ships
# (datasets.X.lungseg), predicting the masks of every data set that names it
# (datasets.Y.lung_masks_from: X), scored against Y's true masks where it has them.


rule train_lungseg:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("train_lungseg.py"),
    output:
        model=f"{RESULTS}/models/{{dataset}}/lungseg/model.safetensors",
        config=f"{RESULTS}/models/{{dataset}}/lungseg/config.json",
        validation=f"{RESULTS}/models/{{dataset}}/lungseg/validation.parquet",
        loss=f"{RESULTS}/models/{{dataset}}/lungseg/loss.parquet",
    log:
        f"{RESULTS}/logs/train_lungseg/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_lungseg/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=config.get("train_runtime_min", 720),
    params:
        cfg=section("lungseg"),
        checkpoints=f"{RESULTS}/checkpoints/{{dataset}}/lungseg",
    script:
        "../workflow_scripts/train_lungseg.py"


rule predict_lung_masks:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        model=lambda wc: f"{RESULTS}/models/{lung_masks_source(wc)}/lungseg/model.safetensors",
        code=script_code("predict_lung_masks.py"),
    output:
        masks=f"{RESULTS}/lung_masks/{{dataset}}/lung_masks.npy",
        dice=f"{RESULTS}/lung_masks/{{dataset}}/dice.parquet",
        dice_summary=f"{RESULTS}/lung_masks/{{dataset}}/dice_summary.parquet",
    log:
        f"{RESULTS}/logs/predict_lung_masks/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict_lung_masks/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=8000,
    script:
        "../workflow_scripts/predict_lung_masks.py"
