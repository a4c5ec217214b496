"""The built-in live dashboard: the page's static files and the sampler that feeds it."""
