"""Pure forward and backward functions on arrays: the engine's core.

Every function takes arrays and settings and returns arrays; nothing here holds
state. Layers in :mod:`clearconv.nn` call them and keep the caches.
"""
