/* quant.c: being written */
