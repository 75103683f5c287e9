"""Command-line interface: ``speechs2s COMMAND --help`` shows each command with an example.

Every command calls the same library function a Python user would; user errors
(:class:`speechs2s.errors.SpeechS2SError`) become one line on stderr and exit code 1.
"""
import sys

import click

from speechs2s.errors import SpeechS2SError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpeechS2SError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="speechs2s")
def main():
    """speechs2s: speech-to-text and text-to-speech toolkit."""
