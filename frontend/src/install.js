// Entry of the installer page (templates/install.html).
import './style.css'

import { createApp } from 'vue'

import { readBoot } from './boot.js'
import { autoFitFrame } from './frame.js'
import InstallApp from './InstallApp.vue'

createApp(InstallApp, { boot: readBoot() }).mount('#app')
autoFitFrame()
