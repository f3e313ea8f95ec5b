# Diffusion study, training: class-conditional DDPM and the noise-aware guidance classifier.
# Checkpoints live outside the declared outputs (results/checkpoints/), so a killed or
# preempted job resumes from its newest checkpoint when the rule runs again.


rule train_diffusion:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("train_diffusion.py"),
    output:
        unet=f"{RESULTS}/models/{{dataset}}/diffusion/unet/diffusion_pytorch_model.safetensors",
        scheduler=f"{RESULTS}/models/{{dataset}}/diffusion/scheduler/scheduler_config.json",
        loss=f"{RESULTS}/models/{{dataset}}/diffusion/loss.parquet",
        loss_png=report(
            f"{RESULTS}/models/{{dataset}}/diffusion/loss.png",
            caption="../report/diffusion_loss.rst",
            category="Training",
        ),
        samples=report(
            f"{RESULTS}/models/{{dataset}}/diffusion/samples.png",
            caption="../report/diffusion_samples.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/train_diffusion/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_diffusion/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=config.get("train_processes", 1),
        mem_mb=16000,
        runtime=config.get("train_runtime_min", 720),
    params:
        cfg=section("diffusion"),
        checkpoints=f"{RESULTS}/checkpoints/{{dataset}}/diffusion",
        processes=config.get("train_processes", 1),
    script:
        "../workflow_scripts/train_diffusion.py"


rule train_classifier:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        scheduler=f"{RESULTS}/models/{{dataset}}/diffusion/scheduler/scheduler_config.json",
        code=script_code("train_classifier.py"),
    output:
        model=f"{RESULTS}/models/{{dataset}}/classifier/model.safetensors",
        validation=f"{RESULTS}/models/{{dataset}}/classifier/validation.parquet",
        validation_png=report(
            f"{RESULTS}/models/{{dataset}}/classifier/validation.png",
            caption="../report/classifier_validation.rst",
            category="Training",
        ),
        loss=f"{RESULTS}/models/{{dataset}}/classifier/loss.parquet",
    log:
        f"{RESULTS}/logs/train_classifier/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_classifier/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=config.get("train_processes", 1),
        mem_mb=16000,
        runtime=config.get("train_runtime_min", 720),
    params:
        cfg=classifier_section,
        checkpoints=f"{RESULTS}/checkpoints/{{dataset}}/classifier",
        processes=config.get("train_processes", 1),
    script:
        "../workflow_scripts/train_classifier.py"
