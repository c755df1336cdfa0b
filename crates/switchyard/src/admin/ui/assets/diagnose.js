"use strict";
// The diagnose page (see admin/ui/mod.rs).
