// Package layout holds tests of the repository's structure: every package
// documents itself, and the imports of every Go file, test files included,
// follow the allow-list in layout_test.go (cmd wires; the worker core knows
// only the feature contract; features know the contract and leaf worker
// packages; leaf worker packages know neither the core nor features;
// nothing imports cmd).
package layout
