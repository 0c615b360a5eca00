"""python -m attn --version: the package's and the loaded library's."""

import sys

import attn


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-V"]):
        print("attn %s (libattn %s, %s)" % (attn.__version__,
                                            attn.library_version(),
                                            attn.library_path))
        return 0
    print("usage: python -m attn --version", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
