"""passerelle: a gateway between a legacy encrypted health-mail network and the MSSanté trust space."""

__version__ = "0.1.0"
