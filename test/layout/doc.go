// Package layout holds tests of the repository's structure: every package
// documents itself, and imports follow the layering rules (cmd wires; the
// worker core knows only the feature contract; leaf worker packages know
// neither the core nor features; nothing imports cmd).
package layout
