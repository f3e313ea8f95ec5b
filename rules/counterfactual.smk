# Diffusion study, counterfactuals: every validation image inverted once (DDIM, depth L), then
# decoded toward the Normal class by each guidance method at each scale of
# datasets.X.guidance_scales. Scales are wildcards: adding one adds jobs and reruns nothing.
# The models are the data set's own or, with datasets.X.apply_model: Y, Y's (model_path).


rule invert:
    input:
        unet=model_path("diffusion/unet/diffusion_pytorch_model.safetensors"),
        scheduler=model_path("diffusion/scheduler/scheduler_config.json"),
        images=f"{RESULTS}/data/{{dataset}}/images.npy",
        split=f"{RESULTS}/splits/{{dataset}}/split.parquet",
        code=script_code("invert.py"),
    output:
        latents=f"{RESULTS}/latents/{{dataset}}/latents.npy",
        reconstructions=f"{RESULTS}/latents/{{dataset}}/reconstructions.npy",
        index=f"{RESULTS}/latents/{{dataset}}/index.parquet",
        trajectory=f"{RESULTS}/latents/{{dataset}}/trajectory.json",
    log:
        f"{RESULTS}/logs/invert/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/invert/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        cfg=section("invert"),
        applied=applied_model,
    script:
        "../workflow_scripts/invert.py"


rule counterfactual:
    input:
        unpack(counterfactual_inputs),
        code=script_code("counterfactual.py"),
    output:
        counterfactuals=f"{RESULTS}/counterfactuals/{{dataset}}/{{method}}/{{scale}}/counterfactuals.npy",
        diff=f"{RESULTS}/counterfactuals/{{dataset}}/{{method}}/{{scale}}/diff.npy",
        absdiff=f"{RESULTS}/counterfactuals/{{dataset}}/{{method}}/{{scale}}/absdiff.npy",
        scores=f"{RESULTS}/counterfactuals/{{dataset}}/{{method}}/{{scale}}/scores.parquet",
        examples=report(
            f"{RESULTS}/counterfactuals/{{dataset}}/{{method}}/{{scale}}/examples.png",
            caption="../report/counterfactual_examples.rst",
            category="Counterfactuals",
            subcategory="{method}",
            labels={"method": "{method}", "scale": "{scale}"},
        ),
    log:
        f"{RESULTS}/logs/counterfactual/{{dataset}}_{{method}}_{{scale}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/counterfactual/{{dataset}}_{{method}}_{{scale}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,
        mem_mb=16000,
    params:
        cfg=section("counterfactual"),
        model_dir=counterfactual_model_dir,
    script:
        "../workflow_scripts/counterfactual.py"
