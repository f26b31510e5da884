import subprocess
import sys


def test_help_does_not_import_torch():
    code = (
        "import sys, io, contextlib\n"
        "from basereward.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    rc = main(['--help'])\n"
        "assert rc == 0\n"
        "assert 'train' in buf.getvalue() and 'init-tiny' in buf.getvalue()\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_verb_is_an_error(capsys):
    from basereward.cli import main

    assert main(["no-such-verb"]) == 2
    assert "unknown verb" in capsys.readouterr().err


def test_every_verb_module_has_the_verb_interface():
    import importlib

    from basereward.cli import COMMANDS

    for verb, (module, _) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise AssertionError(f"verb {verb!r}: module {module} missing") from e
        assert callable(getattr(mod, "add_args", None)) and callable(getattr(mod, "run", None)), verb
