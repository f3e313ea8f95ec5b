"""Rule run_summary: one page with the headline numbers of every data set of the run."""

from pathlib import Path

from cxrgen import logs

smk = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with logs.stage_log(smk.log[0]):
    from cxrgen.evaluation.run_summary import run_summary

    named = {k: v for k, v in smk.input.items() if k != "code"}
    run_summary(
        {k.removeprefix("eval_"): v for k, v in named.items() if k.startswith("eval_")},
        {k.removeprefix("gan_"): v for k, v in named.items() if k.startswith("gan_")},
        Path(smk.output.table).parent,
    )
