"""passerelle: a gateway between a legacy encrypted health-mail network and MSSanté."""

__version__ = "0.1.0"
