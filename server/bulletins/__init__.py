"""Bulletins sent down the tree at the circular's three levels, and each commune's delivery."""
