# Shared helpers of the rules: config look-ups, code dependencies.
import importlib.util
import os

DATASETS = sorted(config["datasets"])
PHANTOM_DATASETS = [
    d for d in DATASETS if config["datasets"][d]["source"] == "phantoms"
]
DIFFUSION_DATASETS = [d for d in DATASETS if "diffusion" in config["datasets"][d]]
# datasets.X.apply_model: Y -> X is scored by Y's models and trains none (checked below)
APPLY_MODEL = {
    d: config["datasets"][d]["apply_model"]
    for d in DATASETS
    if config["datasets"][d].get("apply_model")
}
# the data sets with counterfactuals: each diffusion data set and each one scored by one
SCORED_DATASETS = sorted(DIFFUSION_DATASETS + list(APPLY_MODEL))
GAN_METRICS_DATASETS = [d for d in DATASETS if "gan_metrics" in config["datasets"][d]]
RESULTS = "results"

# Make the cxrgen package importable by every job, whatever environment runs it (the uv
# environment, a --sdm conda environment, a SLURM job's shell). Set, not read: no envvars
# directive applies.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p
        for p in (
            os.path.join(workflow.basedir, "src"),
            os.environ.get("PYTHONPATH", ""),
        )
        if p
    )
)


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def section(name):
    """Params function: one config section of the data set of the job (a plain dict)."""
    return lambda wildcards: dataset_section(wildcards.dataset, name)


# What a data set scored by another's models (apply_model) takes from that data set: whole
# sections, its own keys on top (the same inversion depth and steps the guidance classifier
# was trained for, the same target class and evaluation settings unless it says otherwise) ...
INHERITED_SECTIONS = ("invert", "counterfactual", "evaluate", "figures")
# ... and single facts of the model, where it does not give them: the image size it takes and
# its classes (typed once, on the model's data set)
INHERITED_KEYS = {"preprocess": ("size",), "split": ("classes",)}
# the sections that train a model the counterfactuals read: the model's data set has them
MODEL_SECTIONS = ("diffusion", "classifier", "stargan")


def dataset_section(dataset, name):
    """datasets.<dataset>.<name> as a plain dict, with what an apply_model data set takes
    from its model's data set (INHERITED_SECTIONS, INHERITED_KEYS)."""
    own = dict(config["datasets"][dataset].get(name) or {})
    source = APPLY_MODEL.get(dataset)
    if source is None:
        return own
    theirs = config["datasets"][source].get(name) or {}
    if name in INHERITED_SECTIONS:
        return {**theirs, **own}
    keys = INHERITED_KEYS.get(name, ())
    return {**{k: theirs[k] for k in keys if k in theirs}, **own}


def guidance_scales(dataset):
    """The counterfactual methods and scales of a data set (an apply_model data set without
    guidance_scales runs its model's data set's)."""
    scales = config["datasets"][dataset].get("guidance_scales")
    if scales is None and dataset in APPLY_MODEL:
        scales = config["datasets"][APPLY_MODEL[dataset]].get("guidance_scales")
    return scales or {}


# the data sets evaluated: those with counterfactuals and methods to make them with
EVALUATED_DATASETS = [d for d in SCORED_DATASETS if guidance_scales(d)]


def model_dataset(dataset):
    """The data set whose trained models score this one: its apply_model, else itself."""
    return APPLY_MODEL.get(dataset, dataset)


def models_of(dataset, path):
    """The file or folder ``path`` of the models that score ``dataset``."""
    return f"{RESULTS}/models/{model_dataset(dataset)}/{path}"


def model_path(path):
    """Input function: the file ``path`` of the models that score the job's data set."""

    def scored_by(wildcards):
        return models_of(wildcards.dataset, path)

    return scored_by


def applied_model(wildcards):
    """Params function: the setting "datasets.X.apply_model: Y" when Y's models score X."""
    source = APPLY_MODEL.get(wildcards.dataset)
    return f"datasets.{wildcards.dataset}.apply_model: {source}" if source else None


def check_apply_model():
    """Stop planning with a message naming the key when an apply_model cannot work."""
    for d, source in APPLY_MODEL.items():
        key = f"datasets.{d}.apply_model: {source}"
        if source not in config["datasets"]:
            raise WorkflowError(
                f"{key}: there is no data set '{source}' (data sets: {', '.join(DATASETS)})"
            )
        if "diffusion" not in config["datasets"][source]:
            raise WorkflowError(
                f"{key}: datasets.{source} has no diffusion section, so it trains no "
                f"diffusion model to score {d} with; name a data set that trains one"
            )
        own = [s for s in MODEL_SECTIONS if s in config["datasets"][d]]
        if own:
            raise WorkflowError(
                f"{key}: {d} is scored by {source}'s models but has its own "
                f"{' and '.join(own)} section: remove it, or remove apply_model to train "
                f"{d}'s own models"
            )
        size = (config["datasets"][d].get("preprocess") or {}).get("size")
        model_size = (config["datasets"][source].get("preprocess") or {}).get("size")
        if None not in (size, model_size) and size != model_size:
            raise WorkflowError(
                f"{key}: datasets.{d}.preprocess.size is {size} but {source}'s model takes "
                f"{model_size}x{model_size} images (datasets.{source}.preprocess.size); leave "
                "it unset to take the model's size"
            )
        classes = dataset_section(d, "split").get("classes")
        target = dataset_section(d, "counterfactual").get("target_class")
        if classes and target and target not in classes:
            raise WorkflowError(
                f"{key}: datasets.{d}.counterfactual.target_class '{target}' is not one of "
                f"the classes {list(classes)} of {source}'s model"
            )


check_apply_model()


def classifier_section(wildcards):
    """The classifier section; it trains on t <= L with L = invert.depth unless it says so."""
    cfg = dict(dataset_cfg(wildcards).get("classifier") or {})
    depth = (dataset_cfg(wildcards).get("invert") or {}).get("depth")
    if depth is not None:
        cfg.setdefault("max_depth", depth)
    return cfg


def _load_code_inputs():
    """cxrgen.code_inputs, loaded from its file: it needs only the standard library, and
    planning must not need the library's dependencies (torch, ...) importable."""
    path = os.path.join(workflow.basedir, "src", "cxrgen", "code_inputs.py")
    spec = importlib.util.spec_from_file_location("_cxrgen_code_inputs", path)
    walker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(walker)
    return walker


_CODE_INPUTS = _load_code_inputs()


def script_code(script):
    """Inputs naming the library modules that workflow_scripts/<script> runs: every cxrgen
    module it imports, followed import by import (cxrgen.code_inputs); editing one replans
    its jobs. Snakemake itself reruns a job whose script is newer than its outputs.
    """
    return _CODE_INPUTS.imported_files(
        [os.path.join(workflow.basedir, "workflow_scripts", script)],
        os.path.join(workflow.basedir, "src"),
    )


def source_input(wildcards):
    """The raw data folder of a data set: the generated phantoms or the user's download."""
    ds = dataset_cfg(wildcards)
    if ds["source"] == "phantoms":
        return f"{RESULTS}/phantoms/{wildcards.dataset}"
    path = os.path.expanduser(str(ds["source"]))
    if not os.path.isdir(path):
        raise WorkflowError(
            f"datasets.{wildcards.dataset}.source: the data folder '{path}' does not exist. "
            "Point it at the unpacked download (see README, 'Real data'), or set it to "
            "'phantoms' for the built-in synthetic data."
        )
    return path


def gan_metrics_inputs(wildcards):
    """Synthetic sets of both GANs, the real data, and the classifier for the CXR-space FID."""
    d = wildcards.dataset
    inputs = {
        "stargan": f"{RESULTS}/synthetic/{d}/stargan/index.parquet",
        "dcgan": f"{RESULTS}/synthetic/{d}/dcgan/index.parquet",
        "images": f"{RESULTS}/data/{d}/images.npy",
        "split": f"{RESULTS}/splits/{d}/split.parquet",
    }
    source = dataset_cfg(wildcards).get("fid_cxr_classifier")
    if source:
        inputs["classifier"] = f"{RESULTS}/models/{source}/classifier/model.safetensors"
    return inputs


def counterfactual_targets(name):
    """One output file per data set, method and scale of datasets.X.guidance_scales."""
    return [
        f"{RESULTS}/counterfactuals/{d}/{method}/{scale_wildcard(s)}/{name}"
        for d in SCORED_DATASETS
        for method, scales in guidance_scales(d).items()
        for s in scales
    ]


def scale_wildcard(scale):
    """A guidance scale as a path part: shortest float form ('3', '0.5'), as the library's."""
    return f"{float(scale):g}"


def counterfactual_inputs(wildcards):
    """Latents and the model of one counterfactual job (+ the classifier for method cg); the
    models are those of the data set's apply_model where it has one."""
    d, m = wildcards.dataset, model_dataset(wildcards.dataset)
    inputs = {
        "latents": f"{RESULTS}/latents/{d}/latents.npy",
        "index": f"{RESULTS}/latents/{d}/index.parquet",
        "images": f"{RESULTS}/data/{d}/images.npy",
    }
    if wildcards.method == "stargan":
        if "stargan" not in config["datasets"][m]:
            scored = f" (datasets.{d}.apply_model)" if m != d else ""
            raise WorkflowError(
                f"datasets.{d}.guidance_scales has method stargan but datasets.{m}{scored} "
                "has no stargan section to train the translator with: drop stargan from "
                f"datasets.{d}.guidance_scales"
            )
        inputs["model"] = models_of(d, "stargan/generator.safetensors")
    else:
        inputs["model"] = models_of(
            d, "diffusion/unet/diffusion_pytorch_model.safetensors"
        )
    if wildcards.method == "cg":
        inputs["classifier"] = models_of(d, "classifier/model.safetensors")
    if wildcards.method == "msr":
        first = first_pass_dir(wildcards)
        inputs["first_pass_diff"] = f"{first}/diff.npy"
        inputs["first_pass_scores"] = f"{first}/scores.parquet"
    return inputs


def first_pass_dir(wildcards):
    """Method msr's first-pass counterfactual folder (counterfactual.first_pass, "cg/10")."""
    first = dataset_section(wildcards.dataset, "counterfactual").get(
        "first_pass", "cg/10"
    )
    method, _, scale = first.partition("/")
    return f"{RESULTS}/counterfactuals/{wildcards.dataset}/{method}/{scale_wildcard(scale)}"


def counterfactual_model_dir(wildcards):
    """The model folder a counterfactual job reads: the diffusion model or the StarGAN one."""
    name = "stargan" if wildcards.method == "stargan" else "diffusion"
    return models_of(wildcards.dataset, name)


def evaluate_inputs(wildcards):
    """Every counterfactual of the data set (scores and maps), its inversion and the
    classifier of its models (its apply_model's where it has one)."""
    d = wildcards.dataset
    scales = guidance_scales(d)
    folders = [
        f"{RESULTS}/counterfactuals/{d}/{m}/{scale_wildcard(s)}"
        for m, values in scales.items()
        for s in values
    ]
    if not folders:
        raise WorkflowError(
            f"datasets.{d}.guidance_scales lists no method and scale to evaluate"
        )
    inputs = {
        "scores": [f"{f}/scores.parquet" for f in folders],
        "absdiff": [f"{f}/absdiff.npy" for f in folders],
        "latents": f"{RESULTS}/latents/{d}/index.parquet",
        "images": f"{RESULTS}/data/{d}/images.npy",
    }
    if "classifier" in config["datasets"][model_dataset(d)]:
        inputs["classifier"] = models_of(d, "classifier/model.safetensors")
    # per-lung features in predicted lungs
    if config["datasets"][d].get("lung_masks_from"):
        inputs["lung_masks"] = f"{RESULTS}/lung_masks/{d}/lung_masks.npy"
    return inputs


def evaluate_targets():
    """The evaluation summary and figures of every data set with counterfactuals."""
    return [
        path
        for d in EVALUATED_DATASETS
        for path in (
            f"{RESULTS}/metrics/{d}/counterfactual/summary.parquet",
            f"{RESULTS}/figures/{d}/counterfactual/fig3.png",
        )
    ]


def run_summary_inputs(wildcards):
    """Named inputs eval_{dataset} / gan_{dataset}: every data set's headline table."""
    inputs = {
        f"eval_{d}": f"{RESULTS}/metrics/{d}/counterfactual/summary.parquet"
        for d in EVALUATED_DATASETS
    }
    inputs.update(
        {
            f"gan_{d}": f"{RESULTS}/metrics/{d}/gan_metrics.parquet"
            for d in GAN_METRICS_DATASETS
        }
    )
    return inputs


def apply_cfg(wildcards):
    return config.get("apply", {})[wildcards.name]


def apply_inputs(wildcards):
    """The model data set's diffusion model, classifier and evaluation (its choices)."""
    d, res = apply_cfg(wildcards)["model"], RESULTS
    if d not in DIFFUSION_DATASETS:
        raise WorkflowError(
            f"apply.{wildcards.name}.model: '{d}' is not a data set that trains a diffusion "
            f"model (those are: {', '.join(DIFFUSION_DATASETS) or 'none'})"
        )
    return {
        "unet": f"{res}/models/{d}/diffusion/unet/diffusion_pytorch_model.safetensors",
        "classifier": f"{res}/models/{d}/classifier/model.safetensors",
        "summary": f"{res}/metrics/{d}/counterfactual/summary.parquet",
        "images": os.path.expanduser(str(apply_cfg(wildcards)["input"])),
    }


def apply_targets():
    return [
        f"{RESULTS}/apply/{name}/scores.parquet" for name in config.get("apply", {})
    ]


# Lung segmentation (rules/lungseg.smk)


def lung_masks_source(wildcards):
    """The data set whose lung segmenter predicts this one's masks (its lungseg section)."""
    source = dataset_cfg(wildcards).get("lung_masks_from")
    if source not in config["datasets"] or "lungseg" not in config["datasets"][source]:
        raise WorkflowError(
            f"datasets.{wildcards.dataset}.lung_masks_from: '{source}' is not a data set "
            "with a lungseg section to train the lung segmenter on"
        )
    return source


def lungseg_targets():
    """Every lung segmenter and every data set's predicted lung masks (with their Dice)."""
    return [
        f"{RESULTS}/models/{d}/lungseg/model.safetensors"
        for d in DATASETS
        if "lungseg" in config["datasets"][d]
    ] + [
        f"{RESULTS}/lung_masks/{d}/dice_summary.parquet"
        for d in DATASETS
        if config["datasets"][d].get("lung_masks_from")
    ]
