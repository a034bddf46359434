/* device.cu: being written */
