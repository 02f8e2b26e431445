// Entry of the app page (templates/index.html).
import './style.css'

import { createApp } from 'vue'

import { configureApi } from './api.js'
import App from './App.vue'
import { readBoot } from './boot.js'
import { autoFitFrame } from './frame.js'
import { makeI18n, pageLanguage } from './i18n.js'

const boot = readBoot()
configureApi(boot)
createApp(App, { boot }).use(makeI18n(pageLanguage(boot))).mount('#app')
autoFitFrame()
