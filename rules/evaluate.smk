# Diffusion study, evaluation: every counterfactual method and scale of a data set measured
# on the same validation images (detection, localisation, ground truth, severity, spectra).

EVAL_TABLES = [
    "table2",
    "detection",
    "localisation",
    "ground_truth",
    "severity",
    "severity_predictions",
    "spectra",
    "spectra_curves",
    "inversion",
    "classifier",
    "summary",
]


rule evaluate:
    input:
        unpack(evaluate_inputs),
        code=script_code("evaluate.py"),
    output:
        **{
            t: f"{RESULTS}/metrics/{{dataset}}/counterfactual/{t}.parquet"
            for t in EVAL_TABLES
        },
        **{
            f"{t}_html": report(
                f"{RESULTS}/metrics/{{dataset}}/counterfactual/{t}.html",
                caption=f"../report/evaluate_{t}.rst",
                category="Evaluation",
                subcategory="Tables",
            )
            for t in ("summary", "detection", "table2")
        },
        summary_md=f"{RESULTS}/metrics/{{dataset}}/counterfactual/summary.md",
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,  # the classifier pass (reference row); CPU where there is none
        mem_mb=16000,
    params:
        cfg=section("evaluate"),
    script:
        "../workflow_scripts/evaluate.py"


rule evaluation_figures:
    input:
        unpack(evaluate_inputs),
        tables=expand(
            f"{RESULTS}/metrics/{{{{dataset}}}}/counterfactual/{{table}}.parquet",
            table=EVAL_TABLES,
        ),
        code=script_code("evaluation_figures.py"),
    output:
        **{
            f: report(
                f"{RESULTS}/figures/{{dataset}}/counterfactual/{f}.png",
                caption=f"../report/figure_{f}.rst",
                category="Evaluation",
                subcategory="Figures",
            )
            for f in [
                "fig3",
                "fig4",
                "roc_pr",
                "auroc_vs_scale",
                "severity",
                "gradcam",
            ]
        },
    log:
        f"{RESULTS}/logs/evaluation_figures/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluation_figures/{{dataset}}.tsv"
    conda:
        "../envs/cxrgen.yaml"
    threads: config.get("train_threads", 4)
    resources:
        gpu=1,  # Grad-CAM of the classifier; CPU where there is none
    params:
        cfg=section("figures"),
    script:
        "../workflow_scripts/evaluation_figures.py"


rule run_summary:
    input:
        unpack(run_summary_inputs),
        code=script_code("run_summary.py"),
    output:
        table=f"{RESULTS}/summary.parquet",
        markdown=f"{RESULTS}/summary.md",
        html=report(
            f"{RESULTS}/summary.html",
            caption="../report/run_summary.rst",
            category="Summary",
        ),
    log:
        f"{RESULTS}/logs/run_summary.log",
    conda:
        "../envs/cxrgen.yaml"
    script:
        "../workflow_scripts/run_summary.py"
