"""The async SMTP shell: listeners, the DATA reader, delivery to peers and notices."""
