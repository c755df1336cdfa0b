"use strict";
// The dashboard page (see admin/ui/mod.rs).
