#!/bin/sh
echo "$GREETING from $(uname -m)"
