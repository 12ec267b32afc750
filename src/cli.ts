#!/usr/bin/env node
console.log('distill');
