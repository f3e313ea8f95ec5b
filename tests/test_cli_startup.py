"""The command line builds only the parser of the command it runs: the stages that do not
need torch (phantoms, preprocess, split) start without importing it."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from cxrgen.cli import build_parser, command_name
parser = build_parser(command_name(sys.argv[1:]))
print(sorted(m for m in ("torch", "diffusers", "accelerate") if m in sys.modules))
"""


@pytest.mark.parametrize("command", ["preprocess", "split", "phantoms"])
def test_light_commands_import_no_torch(command):
    out = subprocess.run([sys.executable, "-c", PROBE, "-q", command, "--help"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_a_training_command_still_gets_its_flags_and_unknown_words_get_every_command():
    from cxrgen.cli import build_parser, command_name

    assert command_name(["--log-file", "x.log", "-q", "train-dcgan", "--store", "s"]) == (
        "train-dcgan"
    )
    args = build_parser("train-dcgan").parse_args(
        ["train-dcgan", "--store", "s", "--split", "t", "--output", "o", "--latent-dim", "7"]
    )
    assert args.cfg__latent_dim == 7
    every = build_parser("no-such-command")
    choices = every._subparsers._group_actions[0].choices
    assert {"preprocess", "train-diffusion", "apply", "weights", "predict-lungseg"} <= set(choices)
