"""Images and datasets: one image loader, dataset manifests and the registry, the embedded demo benchmark."""
