"""The recipes of ``stbin reproduce``, one module each; every module here is imported by
:func:`stbin.recipes.get_recipe` and registers its recipe (adding a recipe = adding a module)."""
