"""Small real Tk apps the grounding and desktop suites drive under Xvfb (shipped: users run the suites too)."""
