#!/usr/bin/env node
// Entry point installed as `sextant`.
import '../src/cli/main.ts';
