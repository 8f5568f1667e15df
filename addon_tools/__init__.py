"""Developer tools around the Blender add-on (packing, previews); never shipped inside it."""
