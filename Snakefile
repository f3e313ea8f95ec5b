# cxrgen: chest X-ray generative modelling pipeline.
# Thin on purpose: the stages live in rules/*.smk, the work in the cxrgen package.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    gan="stargan|dcgan",
    method="cfg|cg|renoise|msr|thor|stargan",
    scale=r"[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?",


include: "rules/data.smk"
include: "rules/diffusion.smk"
include: "rules/gan.smk"
include: "rules/counterfactual.smk"
include: "rules/evaluate.smk"
include: "rules/lungseg.smk"
include: "rules/apply.smk"


rule all:
    default_target: True
    input:
        expand("results/splits/{dataset}/split.parquet", dataset=DATASETS),
        [f"results/figures/phantoms_{d}.png" for d in PHANTOM_DATASETS],
        expand(
            "results/models/{dataset}/{model}/loss.parquet",
            dataset=DIFFUSION_DATASETS,
            model=["diffusion", "classifier"],
        ),
        expand(
            "results/metrics/{dataset}/gan_metrics.parquet",
            dataset=GAN_METRICS_DATASETS,
        ),
        counterfactual_targets("scores.parquet"),
        evaluate_targets(),
        lungseg_targets(),
        apply_targets(),
        "results/summary.parquet",
