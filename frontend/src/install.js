// Entry of the installer page (templates/install.html).
import './style.css'

import { createApp } from 'vue'

import { readBoot } from './boot.js'
import { autoFitFrame } from './frame.js'
import { makeI18n, pageLanguage } from './i18n.js'
import InstallApp from './InstallApp.vue'

const boot = readBoot()
createApp(InstallApp, { boot }).use(makeI18n(pageLanguage(boot))).mount('#app')
autoFitFrame()
