# Med-StyleGAN2 study: StarGAN v2-style translator, DCGAN baseline, synthetic sets, FID / LPIPS.
# Training checkpoints live in models/.../checkpoints (not declared outputs): a re-run resumes.


rule train_stargan:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("train_gan.py"),
    output:
        generator=f"{RESULTS}/models/{{dataset}}/stargan/generator.safetensors",
        config=f"{RESULTS}/models/{{dataset}}/stargan/config.json",
        loss=f"{RESULTS}/models/{{dataset}}/stargan/loss.parquet",
        samples=report(
            f"{RESULTS}/models/{{dataset}}/stargan/samples.png",
            caption="../report/stargan_samples.rst",
            category="Med-StyleGAN2",
        ),
    log:
        f"{RESULTS}/logs/train_stargan/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_stargan/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=config.get("train_runtime_min", 720),
    params:
        cfg=section("stargan"),
    script:
        "../workflow_scripts/train_gan.py"


rule train_dcgan:
    input:
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("train_gan.py"),
    output:
        generator=f"{RESULTS}/models/{{dataset}}/dcgan/generator.safetensors",
        config=f"{RESULTS}/models/{{dataset}}/dcgan/config.json",
        loss=f"{RESULTS}/models/{{dataset}}/dcgan/loss.parquet",
        samples=report(
            f"{RESULTS}/models/{{dataset}}/dcgan/samples.png",
            caption="../report/dcgan_samples.rst",
            category="Med-StyleGAN2",
        ),
    log:
        f"{RESULTS}/logs/train_dcgan/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_dcgan/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=config.get("train_runtime_min", 720),
    params:
        cfg=section("dcgan"),
    script:
        "../workflow_scripts/train_gan.py"


rule generate_synthetic:
    input:
        model=f"{RESULTS}/models/{{dataset}}/{{gan}}/generator.safetensors",
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("generate_synthetic.py"),
    output:
        images=f"{RESULTS}/synthetic/{{dataset}}/{{gan}}/images.npy",
        index=f"{RESULTS}/synthetic/{{dataset}}/{{gan}}/index.parquet",
    log:
        f"{RESULTS}/logs/generate_synthetic/{{dataset}}_{{gan}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate_synthetic/{{dataset}}_{{gan}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
    params:
        cfg=section("generate"),
    script:
        "../workflow_scripts/generate_synthetic.py"


rule gan_metrics:
    input:
        unpack(gan_metrics_inputs),
        code=script_code("gan_metrics.py"),
    output:
        table=f"{RESULTS}/metrics/{{dataset}}/gan_metrics.parquet",
        table_html=report(
            f"{RESULTS}/metrics/{{dataset}}/gan_metrics.html",
            caption="../report/gan_metrics_table.rst",
            category="Med-StyleGAN2",
        ),
        figure=report(
            f"{RESULTS}/metrics/{{dataset}}/gan_metrics.png",
            caption="../report/gan_metrics.rst",
            category="Med-StyleGAN2",
        ),
    log:
        f"{RESULTS}/logs/gan_metrics/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gan_metrics/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
    params:
        cfg=section("gan_metrics"),
    script:
        "../workflow_scripts/gan_metrics.py"
