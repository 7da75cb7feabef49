"""Data sets as arrays plus metadata: images are ``(n, h, w, c)`` float32, labels int or targets ``(n, d)``."""
