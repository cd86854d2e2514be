"""Deployment tests: the bootstrap trainer, the no-Docker launcher and docker-compose."""
