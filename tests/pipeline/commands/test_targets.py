import argparse

from spiralprune.deploy.backends import BACKENDS, list_backends
from spiralprune.pipeline.commands import targets as command


def test_lists_every_backend_with_its_availability_and_reason(capsys):
    assert command.run(argparse.Namespace()) == 0
    text = capsys.readouterr().out
    for name, ok, reason in list_backends():
        assert name in text
        if not ok:
            assert reason.split()[0] in text
    assert len(BACKENDS) == 7
