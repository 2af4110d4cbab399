"""Model bundles: the manifest, the files a board needs, the layout of the policy state."""
