"""Human evaluation: raters compare two runs' clips for the same prompt on a small web page (A/B)."""
