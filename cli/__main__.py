"""`python -m tfvae.cli` runs the `tfvae` command line."""

from tfvae.cli.main import main

main()
