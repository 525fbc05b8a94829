"""The Pulumi shell: the ComponentResources, which only wire resources from what the pure core decided.

The only modules of the package that import pulumi (tests/unit/test_layers.py holds them to it).
"""
