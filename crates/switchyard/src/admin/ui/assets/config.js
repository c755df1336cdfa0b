"use strict";
// The config page (see admin/ui/mod.rs).
